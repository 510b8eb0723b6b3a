import itertools

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ablations.claims import LECTURE_TRACE  # the lecture's printout for 1x1x224x224
from alexnet.config import Config
from alexnet.model import build_alexnet, build_lenet, count_params, flops_per_image, shape_trace


def test_lecture_shape_trace_and_parameter_total():
    rows = shape_trace(build_alexnet(Config()), 224)
    assert [(r.layer, r.shape) for r in rows] == LECTURE_TRACE
    assert sum(r.params for r in rows) == 46_764_746


def test_lenet_parameters_and_output():
    net = build_lenet()
    assert count_params(net) == 61_706
    assert shape_trace(net, 28)[-1].shape == (1, 10)


def test_28px_variant_keeps_every_layer_after_the_stem():
    rows224 = shape_trace(build_alexnet(Config()), 224)
    rows28 = shape_trace(build_alexnet(Config(input_size=28)), 28)
    assert [r.layer for r in rows28] == [r.layer for r in rows224]
    assert rows28[0].shape == (1, 96, 28, 28)  # 3x3/1 stem
    assert rows28[13].shape == (1, 1024)  # 256 x 2 x 2
    # identical parameters in every layer but the stem and the first dense layer
    differ = [i for i, (a, b) in enumerate(zip(rows224, rows28)) if a.params != b.params]
    assert differ == [0, 14]


def test_flop_count_matches_torch_flop_counter():
    """Our Conv2d/Linear FLOPs, without bias adds, equal torch's own count of the forward."""
    for net, size in [(build_alexnet(Config()), 224), (build_alexnet(Config(input_size=28)), 28),
                      (build_lenet(), 28)]:
        rows = shape_trace(net, size)
        ours = 0
        for layer, row in zip(net, rows):
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                ours += row.flops - (layer.bias is not None) * (row.shape[1] if len(row.shape) == 2 else
                                                                 torch.Size(row.shape).numel())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            net.eval()(torch.zeros(1, 1, size, size))
        assert ours == counter.get_total_flops()
        assert flops_per_image(net, size) > ours  # plus pooling and activations


OPTIONS = list(itertools.product(["relu", "sigmoid", "tanh"], ["max", "avg"], [(3, 2), (2, 2)],
                                 [224, 28], [False, True]))


@pytest.mark.parametrize("activation,pool,window,size,lrn", OPTIONS)
def test_every_option_builds_and_trains_a_step(activation, pool, window, size, lrn):
    config = Config(activation=activation, pool=pool, pool_kernel=window[0], pool_stride=window[1],
                    input_size=size, lrn=lrn, dropout=0.3)
    net = build_alexnet(config)
    kinds = {type(m) for m in net}
    assert {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[activation] in kinds
    assert {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pool] in kinds
    assert (nn.LocalResponseNorm in kinds) == lrn
    assert all(m.p == 0.3 for m in net if isinstance(m, nn.Dropout))
    pools = [m for m in net if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert len(pools) == 3 and all((p.kernel_size, p.stride) == window for p in pools)
    out = net(torch.rand(2, 1, size, size))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_non_overlapping_pooling_changes_flatten_width():
    rows = shape_trace(build_alexnet(Config(pool_kernel=2, pool_stride=2)), 224)
    assert rows[13].shape == (1, 256 * 6 * 6)


def test_pooling_too_large_for_input_is_rejected():
    with pytest.raises(ValueError, match="pool_kernel=7"):
        build_alexnet(Config(input_size=28, pool_kernel=7, pool_stride=7))


@pytest.mark.parametrize("field,value", [
    ("activation", "swish"), ("pool", "median"), ("input_size", 64), ("dropout", 1.0), ("dropout", -0.1),
    ("lr", 0.0), ("lr", -1.0), ("batch_size", 0), ("epochs", 0), ("momentum", 1.0), ("weight_decay", -1.0),
    ("precision", "fp16"), ("device", "tpu"), ("train_size", 55), ("test_size", 0),
])
def test_invalid_config_names_value_and_allowed(field, value):
    with pytest.raises(ValueError, match=f"invalid {field}={value!r}: expected"):
        Config(**{field: value})


def test_config_key_is_stable_and_distinguishes_configs():
    assert Config().key() == Config().key()
    assert Config(lr=0.02).key() != Config().key()


def test_lenet_from_a_config_swaps_activation_pooling_and_dropout():
    from alexnet.config import LENET
    from alexnet.model import build_model

    lecture = build_model(Config(**LENET))
    assert [type(m).__name__ for m in lecture] == [type(m).__name__ for m in build_lenet()]
    assert count_params(lecture) == 61_706
    rung = build_model(Config(arch="lenet", input_size=28, activation="relu", pool="max", dropout=0.5))
    names = [type(m).__name__ for m in rung]
    assert names.count("ReLU") == 4 and names.count("MaxPool2d") == 2 and names.count("Dropout") == 2
    assert "Sigmoid" not in names and "AvgPool2d" not in names and count_params(rung) == 61_706
    assert rung(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_lenet_configs_that_cannot_be_built_are_refused_by_name():
    with pytest.raises(ValueError, match=r"invalid input_size=224: expected 28 with arch='lenet'"):
        Config(arch="lenet")
    with pytest.raises(ValueError, match=r"invalid lrn=True: expected False with arch='lenet'"):
        Config(arch="lenet", input_size=28, lrn=True)
    with pytest.raises(ValueError, match=r"invalid arch='vgg': expected one of alexnet, lenet"):
        Config(arch="vgg")


@pytest.mark.parametrize("width,channels", [(1.0, (96, 256, 384, 384, 256, 4096)),
                                            (0.5, (48, 128, 192, 192, 128, 2048)),
                                            (0.25, (24, 64, 96, 96, 64, 1024))])
def test_width_scales_every_convolution_and_hidden_dense_layer(width, channels):
    for size, side in ((224, 5), (28, 2)):
        net = build_alexnet(Config(width=width, input_size=size))
        convs = [m.out_channels for m in net if isinstance(m, nn.Conv2d)]
        dense = [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)]
        assert tuple(convs) == channels[:5]
        assert dense == [(channels[4] * side**2, channels[5]), (channels[5], channels[5]), (channels[5], 10)]
        rows = shape_trace(net, size)  # the trace follows the narrower layers; the spatial sizes stay
        full = shape_trace(build_alexnet(Config(input_size=size)), size)
        assert [r.shape[2:] for r in rows] == [r.shape[2:] for r in full]
        assert [r.shape[1] for r in rows if r.layer == "Conv2d"] == list(channels[:5])
        assert rows[-1].shape == (1, 10)


def test_width_rounds_to_at_least_one_channel_and_lenet_ignores_it():
    assert Config(width=0.001).channels() == (1, 1, 1, 1, 1, 4)
    assert Config(width=1 / 3).channels() == (32, 85, 128, 128, 85, 1365)
    lenet = dict(arch="lenet", input_size=28, activation="sigmoid", pool="avg", dropout=0.0)
    assert count_params(build_lenet(Config(**lenet, width=0.25))) == count_params(build_lenet()) == 61_706


def test_width_is_part_of_the_run_identity():
    assert Config(width=0.25).key() != Config().key() != Config(width=0.5).key()
    assert Config(width=0.25).key() == Config(width=0.25).key()
    assert Config().to_dict()["width"] == 1.0  # logged as a param with every other field
    # width 1 (and the SVM's fields at their defaults) hash as configs did before those fields
    # existed: earlier stores are still reused
    import hashlib
    import json

    from alexnet.config import LATER_FIELDS
    assert set(LATER_FIELDS) == {"width", "features", "kernel", "svm_c", "svm_max_train"}
    before = {k: v for k, v in Config().to_dict().items() if k not in LATER_FIELDS}
    assert Config().key() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
    assert Config(svm_c=1.0).key() != Config().key()  # away from its default, a field is part of the key


@pytest.mark.parametrize("width", [0, 0.0, -0.25, float("nan"), float("inf"), 4.5, True, "0.25"])
def test_a_bad_width_is_refused_by_name(width):
    with pytest.raises(ValueError, match=r"invalid width=.*expected a number in \(0, 4\]"):
        Config(width=width)
