import json

import pytest

from tzrctl import state


def test_missing_state_file(tmp_path):
    with pytest.raises(state.StateError, match="has no TZR Host deployment"):
        state.load(tmp_path / "tzrctl.json")


def test_state_file_not_json(tmp_path):
    path = tmp_path / "tzrctl.json"
    path.write_text("{not json")
    with pytest.raises(state.StateError, match="cannot read the state file"):
        state.load(path)


def test_state_file_missing_keys(tmp_path):
    path = tmp_path / "tzrctl.json"
    path.write_text(json.dumps({"mode": "test", "manager": "supervisord"}))
    with pytest.raises(state.StateError, match="lacks programs, env_files, log_dir, data_dir, gateway_url"):
        state.load(path)


def test_state_file_unknown_manager(tmp_path):
    path = tmp_path / "tzrctl.json"
    document = dict.fromkeys(("programs", "env_files"), []) | {
        "mode": "test", "manager": "runit", "log_dir": "/", "data_dir": "/", "gateway_url": "http://x"}
    path.write_text(json.dumps(document))
    with pytest.raises(state.StateError, match="manager must be supervisord or systemd, got 'runit'"):
        state.load(path)


def test_env_file_quoting(tmp_path):
    path = tmp_path / "a.env"
    path.write_text("# comment\n\nA=plain\nB='with space'\nC=\nD='it'\"'\"'s'\n")
    assert state.parse_env_file(path) == {"A": "plain", "B": "with space", "C": "", "D": "it's"}


def test_env_file_bad_line(tmp_path):
    path = tmp_path / "a.env"
    path.write_text("A=1\nnot a setting\n")
    with pytest.raises(state.StateError, match=r"a.env:2: expected NAME=value"):
        state.parse_env_file(path)


def test_env_file_bad_quoting(tmp_path):
    path = tmp_path / "a.env"
    path.write_text("A='open\n")
    with pytest.raises(state.StateError, match="A has bad quoting"):
        state.parse_env_file(path)


def test_env_folder_overrides_in_order(tmp_path):
    (tmp_path / "main.env").write_text("A=1\nB=1\n")
    folder = tmp_path / "env.d"
    folder.mkdir()
    (folder / "20.env").write_text("B=3\n")
    (folder / "10.env").write_text("B=2\nC=2\n")
    (folder / "ignored.txt").write_text("B=9\n")
    assert state.read_environment([tmp_path / "main.env", folder]) == {"A": "1", "B": "3", "C": "2"}
