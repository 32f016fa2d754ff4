"""CLI surface: every command has --help, tasks/models listings show the registries."""
import pytest

from mmsft.cli.main import build_parser, main


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"mmsft {command}" in out and len(out.splitlines()) >= 3


def test_tasks_list_and_show(capsys):
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    for name in ["finance_sentiment", "medical_abstracts", "sst2_sentiment", "banking77_intent",
                 "reviews_books", "reviews_dvd", "reviews_electronics", "reviews_kitchen"]:
        assert name in out
    assert main(["tasks", "show", "finance_sentiment"]) == 0
    shown = capsys.readouterr().out
    assert "Sentences_50Agree.txt" in shown and shown.splitlines()[1].startswith("# mmsft train finance_sentiment")
    assert main(["tasks", "show", "finance"]) == 2


def test_models_list_names_zoo_entries(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "minilm-l6" in out and "installed" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_every_library_folder_is_a_regular_package():
    """setuptools' find_packages (what `pip install .` ships) skips a folder without __init__.py, and with it
    every module below; a namespace `mmsft` would also merge with any other checkout on sys.path."""
    from pathlib import Path

    import mmsft

    assert mmsft.__file__, "mmsft is a namespace package: add mmsft/__init__.py"
    root = Path(mmsft.__file__).parent
    folders = {p.parent for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(root.parent)) for f in folders if not (f / "__init__.py").is_file())
    assert not missing, f"folders without __init__.py: {missing}"
