import json
import subprocess
import sys


def run(*args, env_dir=None):
    return subprocess.run([sys.executable, "-m", "alexnet", *args], capture_output=True, text=True,
                          env=None if env_dir is None else {**__import__("os").environ,
                                                            "ALEXNET_DATA_DIR": str(env_dir)})


def test_shapes_prints_the_trace_and_totals():
    out = run("shapes", "alexnet", "lenet", "alexnet28")
    assert out.returncode == 0, out.stderr
    assert "[1, 96, 54, 54]" in out.stdout and "[1, 256, 5, 5]" in out.stdout
    assert "46,764,746" in out.stdout and "61,706" in out.stdout and "[1, 1024]" in out.stdout


def test_invalid_choice_names_value_and_allowed():
    out = run("train", "--activation", "swish")
    assert out.returncode == 2
    assert "'swish'" in out.stderr and "relu" in out.stderr and "sigmoid" in out.stderr


def test_invalid_number_names_value():
    out = run("train", "--lr", "-1")
    assert out.returncode == 2 and "invalid lr=-1.0: expected a finite number > 0" in out.stderr


def test_missing_data_dir_is_a_clear_error(tmp_path):
    out = run("train", "--data-dir", str(tmp_path / "absent"))
    assert out.returncode == 2 and "does not exist" in out.stderr and "ALEXNET_DATA_DIR" in out.stderr


def test_help_documents_options_and_defaults():
    out = run("train", "--help")
    for text in ("--activation", "relu,sigmoid,tanh", "--lr", "default: 0.01", "--checkpoint", "--precision"):
        assert text in out.stdout


def test_train_prints_table_and_writes_json(data_dir, tmp_path):
    out = run("train", "--input-size", "28", "--train-size", "100", "--test-size", "50", "--epochs", "1",
              "--batch-size", "50", "--json", str(tmp_path / "r.json"), "--checkpoint", str(tmp_path / "new" / "r.pt"),
              env_dir=data_dir)
    assert out.returncode == 0, out.stderr
    assert "test acc" in out.stdout
    assert f"created the --checkpoint folder {tmp_path / 'new'}" in out.stderr  # never created silently
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["status"] == "finished" and result["train_examples"] == 100


def test_shapes_at_a_quarter_width_and_a_bad_width_refused_before_any_work():
    out = run("shapes", "alexnet28", "--width", "0.25")
    assert out.returncode == 0, out.stderr
    assert "width 0.25" in out.stdout and "[1, 24, 28, 28]" in out.stdout and "[1, 1024]" in out.stdout
    out = run("train", "--width", "nan", "--data-dir", "/nonexistent")  # refused before the data is looked for
    assert out.returncode == 2 and "invalid width=nan: expected a number in (0, 4]" in out.stderr
    out = run("shapes", "--width", "0")  # (0, negative, inf: tests/test_model.py, in-process)
    assert out.returncode == 2 and "invalid width=0.0: expected a number in (0, 4]" in out.stderr
