#!/usr/bin/env python3
"""Validates a JUnit XML file (as `misdirect scorecard --format junit` writes it) against the
Jenkins xunit plugin's junit-10.xsd, which scripts/test fetches (from pytest's source
distribution) to .venv/share/misdirect/junit-10.xsd. Prints every error found.

    validate_junit.py FILE.xml

The schema is $MISDIRECT_JUNIT_XSD if set, else .venv/share/misdirect/junit-10.xsd at the root
of the repository this script lies in. Besides the schema, the root element must be
<testsuites> or <testsuite>: the schema declares every element globally, so on its own it
would accept a lone <failure> or <property> as a document.

Exit status: 0 valid; 1 invalid (errors on stderr, one a line, as FILE:LINE: message);
2 usage, or FILE unreadable; 3 the schema or lxml is missing (run scripts/test, or use
.venv/bin/python).
"""
import os
import sys
from pathlib import Path

ROOTS = ("testsuites", "testsuite")


def fail(status, message):
    print(f"validate_junit.py: {message}", file=sys.stderr)
    sys.exit(status)


def schema_path():
    given = os.environ.get("MISDIRECT_JUNIT_XSD")
    if given:
        return Path(given)
    repo = Path(__file__).resolve().parent.parent.parent
    return repo / ".venv" / "share" / "misdirect" / "junit-10.xsd"


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        fail(2, "usage: validate_junit.py FILE.xml")
    document = Path(argv[1])

    try:
        from lxml import etree
    except ImportError:
        fail(3, f"lxml is missing in {sys.executable} (tests/clients/requirements.txt; "
                "scripts/test installs it into .venv: run this with .venv/bin/python)")

    xsd = schema_path()
    if not xsd.is_file():
        fail(3, f"the JUnit schema {xsd} is missing (scripts/test fetches it; "
                "or point MISDIRECT_JUNIT_XSD at a junit-10.xsd)")
    try:
        schema = etree.XMLSchema(etree.parse(str(xsd)))
    except (etree.XMLSyntaxError, etree.XMLSchemaParseError) as e:
        fail(3, f"the JUnit schema {xsd} is not a usable XML Schema: {e}")

    try:
        tree = etree.parse(str(document))
    except OSError as e:
        fail(2, f"{document}: {e}")
    except etree.XMLSyntaxError as e:
        print(f"{document}: not well-formed XML: {e}", file=sys.stderr)
        return 1

    errors = []
    root = tree.getroot().tag
    if root not in ROOTS:
        errors.append(f"{document}:{tree.getroot().sourceline}: root element <{root}> is "
                      f"not one of {', '.join(f'<{r}>' for r in ROOTS)}")
    if not schema.validate(tree):
        errors.extend(f"{document}:{e.line}: {e.message}" for e in schema.error_log)
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        print(f"{document}: invalid against {xsd} ({len(errors)} error(s))", file=sys.stderr)
        return 1
    print(f"{document}: valid against {xsd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
