"""Models by name, no code: torchvision's by ``_target_`` or ``model=torchvision model.name=...``, a
user's own module by ``_target_``; data-derived arguments only where taken; a model that does not fit
the data refused before training."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from rholoss.irreducible import IrreducibleLossStore
from rholoss.models.factory import ModelDataMismatch, build_model
from rholoss.models.signatures import taken_arguments
from rholoss.pipelines import train, train_irreducible
from tests.conftest import compose_config, config_in
from tests.fixtures import cifar_like_images

NUM_CLASSES = 4
# A tiny run: a pool of 100 and a holdout of 100 (val 40), 3 steps of n_b = 8 of n_B = 40.
TINY = [
    "datamodule=tensor_file", "datamodule.val_size=40", "trainer.max_steps=3", "val_every_n_steps=3",
    "checkpoint.every_n_steps=null",
]  # fmt: skip
TARGET = [*TINY, "large_batch_size=40", "selection.percent_train=0.2"]
# The user's own models, in their own module (importable once its folder is on sys.path).
USER_MODELS = '''
from torch import nn
import torchvision


class TinyNet(nn.Module):
    """Takes the class count but not the input shape: only num_classes is passed."""

    def __init__(self, num_classes: int, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class FixedHead(nn.Module):
    """Seven outputs whatever the data."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(12, 7)

    def forward(self, x):
        return self.linear(x.flatten(1))


def resnet_from_settings(**settings):
    """Opaque **kwargs: the framework cannot tell which data arguments reach the model."""
    return torchvision.models.resnet18(**settings)
'''


def write_images(path: Path, channels: int = 3, num_train: int = 240, num_test: int = 40) -> Path:
    """A tensor_file of learnable ``channels`` x 32 x 32 images of 4 classes."""
    data = {}
    for split, count in (("train", num_train), ("test", num_test)):
        labels = torch.arange(count) % NUM_CLASSES
        images = torch.from_numpy(cifar_like_images(labels.numpy(), seed=count)).float() / 255
        data[f"x_{split}"], data[f"y_{split}"] = images[:, :channels].contiguous(), labels
    torch.save(data, path)
    return path


@pytest.fixture(scope="module")
def il_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 3-channel tensor file and its IL store, made by an MLP."""
    root = tmp_path_factory.mktemp("by_name")
    data = write_images(root / "rgb.pt")
    result = train_irreducible(
        config_in(
            root,
            "train_irreducible",
            *TINY,
            f"datamodule.path={data}",
            "model.hidden_sizes=[32]",
            "batch_size=32",
            output="il",
        )
    )
    return data, Path(result["il_store"])


@pytest.fixture
def user_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "user_models_pkg").mkdir()
    (tmp_path / "user_models_pkg" / "__init__.py").write_text(textwrap.dedent(USER_MODELS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_models_pkg"
    sys.modules.pop("user_models_pkg", None)


def train_on_store(root: Path, data: Path, store: Path, *overrides: str) -> dict:
    """A few reducible_loss steps on the 3-channel tensor file with the MLP's IL store, another model."""
    return train(
        config_in(
            root,
            "train",
            *TARGET,
            f"datamodule.path={data}",
            "selection=reducible_loss",
            f"irreducible.path={store}",
            *overrides,
        )
    )


def model_config(*overrides: str):
    return compose_config("train", ["paths.output_dir=/tmp/unused", *overrides]).model


@pytest.mark.slow
@pytest.mark.parametrize(
    "model",
    [
        ["model._target_=torchvision.models.resnet18", "~model.hidden_sizes", "~model.dropout"],  # the command
        ["model=torchvision", "model.name=resnet18"],
    ],
    ids=["target", "name"],
)
def test_torchvision_resnet18_trains_with_an_il_store_made_by_an_mlp(
    il_store: tuple[Path, Path], tmp_path: Path, model: list[str]
) -> None:
    data, store = il_store
    assert IrreducibleLossStore.load(store).metadata["il_config"]["model"]["_target_"] == "rholoss.models.MLP"
    result = train_on_store(tmp_path, data, store, *model)
    assert result["il_store"] == str(store)
    assert (result["steps"], result["batch_size"], result["large_batch_size"]) == (3, 8, 40)
    assert result["model"] in ("torchvision.models.resnet18", "rholoss.models.torchvision_model")
    assert 0.0 <= result["test_acc"] <= 1.0 and result["val_curve"][0][0] == 3


def test_a_users_own_module_by_target_trains_with_the_same_store(
    il_store: tuple[Path, Path], tmp_path: Path, user_models: str
) -> None:
    data, store = il_store
    result = train_on_store(
        tmp_path,
        data,
        store,
        f"model._target_={user_models}.TinyNet",
        "~model.hidden_sizes",
        "~model.dropout",
        "+model.width=4",
    )
    assert result["model"] == f"{user_models}.TinyNet" and result["il_store"] == str(store) and result["steps"] == 3


def test_data_arguments_reach_only_callables_that_take_them(user_models: str) -> None:
    model = build_model(model_config(f"model._target_={user_models}.TinyNet", "~model.hidden_sizes", "~model.dropout"),
                        (3, 8, 8), NUM_CLASSES, vocab_size=30)  # fmt: skip
    assert model.head.out_features == NUM_CLASSES


def test_kwargs_are_followed_to_the_class_that_takes_them() -> None:
    resnet = taken_arguments(torchvision.models.resnet18)  # **kwargs -> ResNet (its return annotation)
    assert resnet.takes("num_classes") and not resnet.takes("input_shape") and not resnet.opaque

    class Subclass(torchvision.models.ResNet):
        def __init__(self, depth: int = 10, **kwargs) -> None:
            super().__init__(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], **kwargs)

    subclass = taken_arguments(Subclass)
    assert subclass.takes("depth") and subclass.takes("num_classes") and not subclass.opaque

    def opaque(**settings) -> nn.Module:
        return nn.Identity()

    assert taken_arguments(opaque).opaque and not taken_arguments(opaque).names


def test_an_opaque_builder_without_the_class_count_is_refused_naming_the_setting(user_models: str) -> None:
    target = [f"model._target_={user_models}.resnet_from_settings", "~model.hidden_sizes", "~model.dropout"]
    with pytest.raises(ModelDataMismatch, match=r"outputs shape \(2, 1000\).*needs \(2, 4\).*model\.num_classes=4"):
        build_model(model_config(*target), (3, 32, 32), NUM_CLASSES)
    model = build_model(model_config(*target, "+model.num_classes=4"), (3, 32, 32), NUM_CLASSES)
    assert model.fc.out_features == NUM_CLASSES


def test_a_data_argument_set_against_the_data_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"model\.num_classes=5 contradicts the data, whose num_classes is 4.*~model\.num_classes"
    ):
        build_model(model_config("model=torchvision", "model.name=resnet18", "+model.num_classes=5"), (3, 32, 32), 4)
    model = build_model(
        model_config("model=torchvision", "model.name=resnet18", "+model.num_classes=4"), (3, 32, 32), 4
    )
    assert model.fc.out_features == 4


def test_a_3_channel_model_on_1_channel_images_is_refused_before_training(tmp_path: Path) -> None:
    data = write_images(tmp_path / "grey.pt", channels=1)
    cfg = config_in(tmp_path, "train", *TARGET, f"datamodule.path={data}", "selection=uniform", "model=torchvision",
                    "model.name=resnet18", output="run")  # fmt: skip
    with pytest.raises(ModelDataMismatch, match=r"conv1\) takes 3-channel inputs; the data has 1 channel") as error:
        train(cfg)
    assert "(2, 1, 32, 32)" in str(error.value)
    assert not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "csv").exists()


def test_the_output_width_must_be_the_class_count(user_models: str) -> None:
    config = model_config(f"model._target_={user_models}.FixedHead", "~model.hidden_sizes", "~model.dropout")
    with pytest.raises(ModelDataMismatch, match=r"outputs shape \(2, 7\).*needs \(2, 4\).*takes no num_classes"):
        build_model(config, (3, 2, 2), NUM_CLASSES)
    with pytest.raises(
        ModelDataMismatch, match=r"first linear layer \(linear\) takes 12 features; the data's inputs have 27"
    ):
        build_model(config, (3, 3, 3), 7)


def test_an_unknown_torchvision_name_lists_close_names() -> None:
    with pytest.raises(
        ValueError, match=r"Unknown torchvision classification model model\.name=resnet19; close names: resnet18"
    ):
        build_model(model_config("model=torchvision", "model.name=resnet19"), (3, 32, 32), 4)
    with pytest.raises(ValueError, match="detection, segmentation"):
        build_model(model_config("model=torchvision", "model.name=fasterrcnn_resnet50_fpn"), (3, 32, 32), 4)


def test_a_target_that_is_not_importable_or_not_a_model_is_refused() -> None:
    with pytest.raises(ValueError, match=r"(?s)model\._target_=no_such_package\.Net cannot be imported.*PYTHONPATH"):
        build_model({"_target_": "no_such_package.Net"}, (3, 32, 32), 4)
    with pytest.raises(TypeError, match=r"returned a dict, not a torch\.nn\.Module"):
        build_model({"_target_": "builtins.dict"}, (3, 32, 32), 4)


def test_torchvision_by_name_refuses_another_models_settings() -> None:
    with pytest.raises(ValueError, match=r"torchvision resnet18 does not take hidden_sizes.*~model\.hidden_sizes"):
        build_model(model_config("model=torchvision", "model.name=resnet18", "+model.hidden_sizes=[3]"), (3, 32, 32), 4)


@pytest.mark.slow  # writes three 45 MB state dicts
def test_local_weights_load_the_body_and_replace_a_foreign_head(tmp_path: Path) -> None:
    imagenet = torchvision.models.resnet18()  # 1000 classes
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pth")
    config = model_config("model=torchvision", "model.name=resnet18", f"model.weights={tmp_path / 'imagenet.pth'}")
    model = build_model(config, (3, 32, 32), NUM_CLASSES)
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, imagenet.layer4[1].bn2.running_var)
    assert model.fc.out_features == NUM_CLASSES

    torch.save(model.state_dict(), tmp_path / "own.pth")  # same classes: the head is loaded too
    again = build_model(model_config("model=torchvision", "model.name=resnet18", f"model.weights={tmp_path / 'own.pth'}"),
                        (3, 32, 32), NUM_CLASSES)  # fmt: skip
    assert torch.equal(again.fc.weight, model.fc.weight)

    grey = {**imagenet.state_dict(), "conv1.weight": torch.zeros(64, 1, 7, 7)}  # a ResNet-18 for grey images
    torch.save(grey, tmp_path / "grey.pth")
    with pytest.raises(
        ValueError,
        match=r"not hold torchvision resnet18 weights: conv1\.weight is \(64, 1, 7, 7\) in the file, \(64, 3, 7, 7\) here",
    ):
        build_model(model_config("model=torchvision", "model.name=resnet18", f"model.weights={tmp_path / 'grey.pth'}"),
                    (3, 32, 32), NUM_CLASSES)  # fmt: skip


def test_named_torchvision_weights_come_only_from_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    config = model_config("model=torchvision", "model.name=resnet18", "model.weights=IMAGENET1K_V1")
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError, match=rf"never download.*copy it to {cached}"):
        build_model(config, (3, 32, 32), NUM_CLASSES)
    cached.parent.mkdir(parents=True)
    imagenet = torchvision.models.resnet18()
    torch.save(imagenet.state_dict(), cached)
    assert torch.equal(build_model(config, (3, 32, 32), NUM_CLASSES).conv1.weight, imagenet.conv1.weight)
    with pytest.raises(
        ValueError, match=r"neither a file nor one of resnet18's torchvision weights \(IMAGENET1K_V1, DEFAULT\)"
    ):
        build_model(model_config("model=torchvision", "model.name=resnet18", "model.weights=IMAGENET9"), (3, 32, 32), 4)


@pytest.mark.slow  # GoogLeNet's own initialisation takes seconds
def test_googlenet_by_name_returns_one_logits_tensor_in_train_mode() -> None:
    model = build_model(model_config("model=torchvision", "model.name=googlenet"), (3, 32, 32), NUM_CLASSES)
    assert model.train()(torch.randn(2, 3, 32, 32)).shape == (2, NUM_CLASSES)


# ------------------------------------------------------------------------------ timm (optional extra)


def test_timm_by_name_builds_its_stem_for_grey_images() -> None:
    pytest.importorskip("timm")
    model = build_model(model_config("model=timm", "model.name=resnet18"), (1, 32, 32), NUM_CLASSES)
    assert model.conv1.in_channels == 1 and model.fc.out_features == NUM_CLASSES


@pytest.mark.slow  # writes a 45 MB state dict
def test_timm_local_weights_adapt_the_stem_and_replace_the_head(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    imagenet = timm.create_model("resnet18")  # RGB, 1000 classes
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pth")
    config = model_config("model=timm", "model.name=resnet18", f"model.weights={tmp_path / 'imagenet.pth'}")
    model = build_model(config, (1, 32, 32), NUM_CLASSES)
    assert torch.allclose(model.conv1.weight[:, 0], imagenet.conv1.weight.sum(1))  # RGB filters summed for grey
    assert torch.equal(model.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight)
    assert model.fc.out_features == NUM_CLASSES
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_model(
            model_config("model=timm", "model.name=resnet18", f"model.weights={tmp_path / 'none.pth'}"), (3, 32, 32), 4
        )
    with pytest.raises(ValueError, match="does not hold timm resnet34 weights"):
        build_model(
            model_config("model=timm", "model.name=resnet34", f"model.weights={tmp_path / 'imagenet.pth'}"),
            (3, 32, 32),
            4,
        )


def test_timm_unknown_names_and_other_models_settings_are_refused() -> None:
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match=r"Unknown timm model model\.name=resnet19; close names: .*resnet18"):
        build_model(model_config("model=timm", "model.name=resnet19"), (3, 32, 32), 4)
    with pytest.raises(ValueError, match=r"timm resnet18 does not take hidden_sizes"):
        build_model(model_config("model=timm", "model.name=resnet18", "+model.hidden_sizes=[3]"), (3, 32, 32), 4)


@pytest.mark.slow
def test_timm_model_trains_on_grey_images(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    data = write_images(tmp_path / "grey.pt", channels=1)
    result = train(config_in(tmp_path, "train", *TARGET, f"datamodule.path={data}", "selection=uniform", "model=timm",
                             "model.name=resnet18"))  # fmt: skip
    assert result["steps"] == 3 and result["model"] == "rholoss.models.timm_model"
