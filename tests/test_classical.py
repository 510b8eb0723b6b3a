"""The features claim's classical arms: HOG / pixels + SVM (alexnet.classical), arms like any other
(from the claims table, logged to MLflow, identified by their config, reused when finished)."""

from dataclasses import replace

import mlflow
import numpy as np
import pytest

from ablations.claims import BY_ID, SCALES, SVM, Claim
from ablations.running.plan import configs
from ablations.running.suite import Suite, SuiteOptions
from alexnet import classical
from alexnet.config import Config
from alexnet.tracking import Tracker


def test_hog_features_of_an_image_match_scikit_images_own():
    from skimage.feature import hog

    rng = np.random.default_rng(0)
    import torch

    image = torch.from_numpy(rng.integers(0, 256, (1, 28, 28), dtype=np.uint8))
    ours = classical.features(image, "hog")
    theirs = hog(image[0].numpy() / 255.0, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2),
                 block_norm="L2-Hys")
    assert ours.shape == (1, 6 * 6 * 2 * 2 * 9) and np.allclose(ours[0], theirs, atol=1e-6)
    assert classical.features(image, "pixels").max() <= 1.0 and classical.features(image, "pixels").shape == (1, 784)


@pytest.mark.parametrize("field, value, expected", [
    ("svm_c", 0, "invalid svm_c=0: expected a finite number > 0"),
    ("svm_c", -1.0, "invalid svm_c=-1.0: expected a finite number > 0"),
    ("svm_c", float("inf"), "invalid svm_c=inf"),
    ("kernel", "poly", "invalid kernel='poly': expected one of linear, rbf"),
    ("features", "sift", "invalid features='sift': expected one of hog, pixels"),
    ("epochs", 3, "invalid epochs=3: expected 1 with arch='svm'"),
    ("augment", True, "invalid augment=True: expected False with arch='svm'"),
    ("svm_max_train", 15, "invalid svm_max_train=15: expected a multiple of 10")])
def test_a_bad_classical_setting_is_refused_naming_it(field, value, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace("+", r"\+")):
        Config(**{**SVM, "train_size": 100, "test_size": 100, "batch_size": 10, field: value})


def test_a_claim_with_a_bad_c_is_refused_when_the_plan_is_made_before_any_work():
    claim = Claim("toy", "an SVM with C <= 0", "better", {"AlexNet": {}, "svm": {**SVM, "svm_c": 0.0}})
    with pytest.raises(ValueError, match=r"invalid svm_c=0.0: expected a finite number > 0"):
        configs([claim], SCALES["smoke"], __import__("torch").device("cpu"))


def test_classical_arms_are_logged_identified_by_their_config_and_reused(tmp_path, fmnist):
    claim = BY_ID["features"]

    def suite():
        return Suite(SCALES["smoke"], Tracker(f"sqlite:///{tmp_path}/mlflow.db"), fmnist,
                     SuiteOptions(device="cpu", checkpoint_dir=tmp_path / "checkpoints", progress=False))

    first = suite()
    rows = first.plan.rows([claim], first.plan.configs([claim]))
    first.plan.estimate(rows)  # an SVM is priced once per config: its later seeds are copies of that fit
    assert [r.seconds > 0 for r in rows if not r.config.sgd] == [True, False] * 3
    (report,) = first.run_claims([claim], "test")
    assert first.trained == 2 * len(claim.arms) and set(report.comparisons) == set(claim.comparisons())
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("alexnet-claims")
    arms = client.search_runs([exp.experiment_id], "tags.kind = 'arm' and params.arch = 'svm'")
    assert len(arms) == 3 * 2 and all(r.info.status == "FINISHED" for r in arms)
    by_arm = {}
    for r in arms:
        by_arm.setdefault(r.data.tags["arm"], []).append(r)
        assert {"test_acc", "train_acc", "train_loss", "fit_s"} <= set(r.data.metrics)
    linear = by_arm["HOG + linear SVM"]
    assert {(r.data.params["kernel"], r.data.params["svm_c"], r.data.params["features"]) for r in linear} == {
        ("linear", "1.0", "hog")}
    # deterministic: both seeds of an SVM arm hold the same numbers, and each its own seed
    for runs in by_arm.values():
        assert len({r.data.metrics["test_acc"] for r in runs}) == 1 and {r.data.tags["seed"] for r in runs} == {
            "0", "1"}
    # identified by its config: C=1 and C=10 of the same features are two runs, with two config keys
    keys = {r.data.tags["arm"]: r.data.tags["config_key"] for r in arms}
    assert len(set(keys.values())) == 3
    smoke_svm = Config(**{**SCALES["smoke"].base, **SVM, "device": "cpu", "precision": "fp32"})
    assert keys["HOG + RBF SVM"] == smoke_svm.key()
    # only what changes the fit is in the key: the same SVM on another device or with other SGD settings
    # beside it is the same run; another C or subset is not
    assert replace(smoke_svm, device="cuda", precision="bf16", lr=0.5, batch_size=16).key() == smoke_svm.key()
    assert replace(smoke_svm, svm_c=1.0).key() != smoke_svm.key() != replace(smoke_svm, train_size=50).key()
    again = suite()
    (rerun,) = again.run_claims([claim], "test")
    assert again.trained == 0 and all(r.reused for r in rerun.runs)
    assert rerun.verdict == report.verdict and len(client.search_runs([exp.experiment_id], "tags.kind = 'arm'")) == 8


def test_the_fit_sees_the_networks_images_and_reports_one_epoch_like_a_network(fmnist):
    config = Config(**{**SVM, "train_size": 200, "test_size": 100, "batch_size": 10, "kernel": "linear",
                       "svm_c": 1.0, "svm_max_train": 100})
    result = classical.fit(config, 3, fmnist)
    (record,) = result.epochs
    assert result.status == "finished" and result.seed == 3 and result.train_examples == 100  # capped
    assert result.eval_examples == 100 and 0.3 < record["test_acc"] <= 1 and record["fit_s"] > 0
    assert result.params == 10 * 1296 + 10 and result.flops_per_image == 2 * 10 * 1296
    assert {"sklearn", "skimage"} <= set(result.env)  # the libraries' versions are recorded
    again = classical.fit(config, 4, fmnist)  # the same fit, handed to another seed
    assert again.seed == 4 and again.epochs == result.epochs
    beside = classical.fit(replace(config, lr=0.5, device="cuda"), 5, fmnist)  # the same fit, other fields beside
    assert beside.epochs == result.epochs and beside.config["lr"] == 0.5 and beside.config["device"] == "cuda"
    other = classical.fit(replace(config, svm_c=0.01), 3, fmnist)
    assert other.epochs[0]["train_loss"] != record["train_loss"]  # C changes the model
