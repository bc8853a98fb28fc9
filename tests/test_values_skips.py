"""tests/conftest.py: a skip for a missing import of gradekit or a dev dependency fails the run; others are skips."""

from __future__ import annotations

import pytest

CONFTEST = "from tests.conftest import *  # noqa: F403\n"


@pytest.mark.parametrize(
    "body",
    [
        'pytest.importorskip("gradekit.no_such_module")',
        'pytest.importorskip("schemathesis.no_such_module")',  # a dev dependency, broken
        'pytest.importorskip("gradekit.no_such_module", reason="optional")',  # a custom reason hides the name
        "pytest.skip(\"could not import 'gradekit.runtime.gone': No module named 'gradekit.runtime.gone'\")",
    ],
)
def test_a_missing_own_or_dev_import_fails(pytester: pytest.Pytester, body: str) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(f"import pytest\n\ndef test_it():\n    {body}\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*which is gradekit's own or in the dev extra*"])


def test_a_module_level_importorskip_of_our_own_fails_collection(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        'import pytest\n\nfake = pytest.importorskip("gradekit.no_such_module")\n\ndef test_it():\n    pass\n'
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert result.ret != 0


def test_other_skips_are_allowed_and_listed(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        "import pytest\n\n"
        "def test_reason():\n    pytest.skip('needs a GPU')\n\n"
        "def test_foreign():\n    pytest.importorskip('no_such_third_party_package')\n\n"
        "@pytest.mark.xfail(reason='known')\ndef test_xfail():\n    assert False\n"
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2, xfailed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*allowed skips*", "*test_reason: needs a GPU", "*test_foreign: could not import*"])
