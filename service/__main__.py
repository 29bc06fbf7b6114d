from audience_authz.cli import main

main()
