"""JUnit XML for CI: ``policy check``, ``policy test`` and ``policy verify`` with ``--junit FILE``.

One ``<testsuite>`` per command; each check, case or property is a ``<testcase>`` whose
``<failure>`` (or ``<error>``) carries the message with its file:line. The format is the
one Jenkins, GitLab and GitHub test reporters read (the xunit2 schema pytest writes).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Case:
    name: str
    classname: str
    status: str = "pass"  # pass, fail, error or skip
    message: str = ""
    file: str = ""
    line: int = 0


def write(path: str | Path, suite: str, cases: list[Case]) -> None:
    root = ET.Element("testsuites")
    element = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                            failures=str(sum(c.status == "fail" for c in cases)),
                            errors=str(sum(c.status == "error" for c in cases)),
                            skipped=str(sum(c.status == "skip" for c in cases)))
    for case in cases:
        attrs = {"name": case.name, "classname": case.classname}
        if case.file:
            attrs["file"] = case.file
            attrs["line"] = str(case.line)
        item = ET.SubElement(element, "testcase", **attrs)
        if case.status in ("fail", "error"):
            tag = "failure" if case.status == "fail" else "error"
            where = f"{case.file}:{case.line}: " if case.file else ""
            ET.SubElement(item, tag, message=(where + case.message)[:1000]).text = where + case.message
        elif case.status == "skip":
            ET.SubElement(item, "skipped", message=case.message)
    ET.indent(root)
    Path(path).write_text(ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
