"""Tests for detkit.inference: input forms (same pixels as the file), letterbox round trip, checkpoint checks."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from detkit.inference import Predictor, load_detector


class BrightBoxDetector(nn.Module):
    """Stands in for a detector: 'detects' the bright pixels of each letterboxed input as one box."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.seen_shapes: list[tuple[int, ...]] = []

    def predict_batch(self, images, score_threshold=None):
        self.seen_shapes.append(tuple(images.shape))
        out = []
        for image in images:
            ys, xs = torch.nonzero(image.mean(0) > 0.5, as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            out.append({"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([0])})
        return out


def _image_with_box() -> np.ndarray:
    image = np.zeros((100, 200, 3), dtype=np.uint8)  # H=100, W=200: non-square
    image[20:60, 50:90] = 255  # box (50, 20, 90, 60) in xyxy pixels
    return image


def test_known_box_round_trips_through_letterbox_of_non_square_image():
    predictor = Predictor(BrightBoxDetector(), ["square"], input_size=100)
    [result] = predictor.predict(_image_with_box())
    # Input is 100x50 inside a 128x128 padded canvas; the box comes back in original pixels.
    assert predictor.detector.seen_shapes == [(1, 3, 128, 128)]
    torch.testing.assert_close(result["boxes"], torch.tensor([[50.0, 20.0, 90.0, 60.0]]))
    assert result["names"] == ["square"]


def test_accepts_path_pil_numpy_and_tensor(tmp_path):
    image = _image_with_box()
    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    forms = [str(path), path, Image.fromarray(image), image, torch.from_numpy(image).permute(2, 0, 1).float() / 255]
    predictor = Predictor(BrightBoxDetector(), ["square"], input_size=100)
    results = predictor.predict(forms)
    assert len(results) == len(forms)
    for result in results:
        torch.testing.assert_close(result["boxes"], torch.tensor([[50.0, 20.0, 90.0, 60.0]]))
    assert predictor.predict([]) == []


def test_rejects_bad_images():
    predictor = Predictor(BrightBoxDetector(), ["square"], input_size=100)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        predictor.predict(np.zeros((10, 10, 2), dtype=np.uint8))
    with pytest.raises(TypeError, match="unsupported image type"):
        predictor.predict(42)


def test_load_detector_rejects_foreign_and_future_checkpoints(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a detkit checkpoint"):
        load_detector(foreign)
    future = tmp_path / "future.ckpt"
    torch.save({"state_dict": {}, "detkit": {"format_version": 999}}, future)
    with pytest.raises(ValueError, match="format 999"):
        load_detector(future)
    with pytest.raises(FileNotFoundError):
        load_detector(tmp_path / "missing.ckpt")


def test_load_detector_never_fetches_pretrained_backbone_weights(tmp_path, monkeypatch):
    import torchvision.models._api as weights_api

    from detkit.inference import instantiate_detector

    config = {
        "class_path": "detkit.models.Detector",
        "init_args": {
            "backbone": {"class_path": "detkit.models.ResNetBackbone", "init_args": {"depth": 18, "weights": "IMAGENET1K_V1"}},
            "neck": {"class_path": "detkit.models.FPN", "init_args": {"out_channels": 32, "extra_levels": 0}},
            "head": {"class_path": "detkit.models.FCOSHead", "init_args": {"num_convs": 1}},
        },
    }
    trained = instantiate_detector(config, 2, pretrained_backbone=False)
    checkpoint = {
        "state_dict": {f"detector.{k}": v for k, v in trained.state_dict().items()},
        "detkit": {"format_version": 2, "num_classes": 2, "class_names": ["a", "b"], "detector": config, "input_size": 64},
    }
    path = tmp_path / "r18.ckpt"
    torch.save(checkpoint, path)

    def no_download(*args, **kwargs):
        raise AssertionError("load_detector tried to fetch pretrained weights")

    monkeypatch.setattr(weights_api.WeightsEnum, "get_state_dict", no_download)
    # The guard works: building with the configured weights would fetch (jsonargparse wraps the error).
    with pytest.raises((AssertionError, ValueError), match="fetch pretrained"):
        instantiate_detector(config, 2)
    model = load_detector(path)
    for name, value in trained.state_dict().items():
        assert torch.equal(model.detector.state_dict()[name], value), name
    assert model.class_names == ["a", "b"] and model.input_size == 64


def test_predictor_letterbox_pads_to_the_training_pad_multiple():
    detector = BrightBoxDetector()
    [result] = Predictor(detector, ["square"], input_size=100, pad_multiple=128).predict(_image_with_box())
    assert detector.seen_shapes == [(1, 3, 128, 128)]
    torch.testing.assert_close(result["boxes"], torch.tensor([[50.0, 20.0, 90.0, 60.0]]))
    Predictor(detector, ["square"], input_size=100, pad_multiple=8).predict(_image_with_box())
    assert detector.seen_shapes[-1] == (1, 3, 104, 104)


class RecordingDetector(BrightBoxDetector):
    """Records every letterboxed batch it is given, so tests compare the exact pixels the model saw."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def predict_batch(self, images, score_threshold=None):
        self.inputs.append(images.clone())
        return super().predict_batch(images, score_threshold)


def _seen(image) -> tuple[torch.Tensor, dict]:
    """The input the detector saw for ``image``, and the prediction."""
    detector = RecordingDetector()
    [result] = Predictor(detector, ["square"], input_size=64).predict(image)
    return detector.inputs[0], result


def _exif_rotated_jpeg(path):
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 deg clockwise: 40 wide x 20 high stored, 20 x 40 shown
    Image.fromarray(_image_with_box()[::5, ::5].copy()).save(path, exif=exif.tobytes(), quality=95)


def _rgba_png(path):
    rgba = np.zeros((40, 64, 4), dtype=np.uint8)  # longest side 64: no resize
    rgba[..., :3] = 255  # white everywhere, but ...
    rgba[10:30, 20:40, 3] = 255  # ... only this box is opaque: the rest is hidden white over black
    Image.fromarray(rgba).save(path)


def _png_16bit(path):
    values = np.full((40, 64), 257 * 20, dtype=np.uint16)
    values[5:25, 10:30] = 65535
    Image.fromarray(values).save(path)


@pytest.mark.parametrize("make", [_exif_rotated_jpeg, _rgba_png, _png_16bit], ids=["exif_jpeg", "rgba_png", "png_16bit"])
def test_pil_image_gives_the_same_pixels_and_detections_as_its_path(tmp_path, make):
    path = tmp_path / "image.png"
    if make is _exif_rotated_jpeg:
        path = tmp_path / "image.jpg"
    make(path)
    by_path, expected = _seen(path)
    with Image.open(path) as image:
        by_pil, result = _seen(image)
    assert torch.equal(by_pil, by_path)
    torch.testing.assert_close(result["boxes"], expected["boxes"], rtol=0, atol=0)


def test_rotated_rgba_and_16bit_files_come_in_as_displayed(tmp_path):
    _exif_rotated_jpeg(tmp_path / "r.jpg")
    _rgba_png(tmp_path / "a.png")
    _png_16bit(tmp_path / "d.png")
    # stored rows 4..11, cols 10..17 of a 20x40 image; displayed 90 deg clockwise: x 8..15, y 10..17
    torch.testing.assert_close(_seen(tmp_path / "r.jpg")[1]["boxes"], torch.tensor([[8.0, 10.0, 16.0, 18.0]]), rtol=0, atol=1.0)
    torch.testing.assert_close(_seen(tmp_path / "a.png")[1]["boxes"], torch.tensor([[20.0, 10.0, 40.0, 30.0]]))
    torch.testing.assert_close(_seen(tmp_path / "d.png")[1]["boxes"], torch.tensor([[10.0, 5.0, 30.0, 25.0]]))


@pytest.mark.parametrize(
    "image, match",
    [
        (torch.from_numpy(_image_with_box()).permute(2, 0, 1).float(), r"float image values in \[0, 255\]: expected 0..1 floats"),
        (_image_with_box().astype(np.float32), r"float image values in \[0, 255\]"),
        (torch.from_numpy(_image_with_box()).permute(2, 0, 1).float() / 127.5 - 1, r"float image values in \[-1, 1\]"),
    ],
    ids=["tensor_0_255", "numpy_0_255", "tensor_minus1_1"],
)
def test_float_images_outside_0_1_raise_saying_the_range(image, match):
    detector = RecordingDetector()
    with pytest.raises(ValueError, match=match):
        Predictor(detector, ["square"], input_size=64).predict(image)
    assert detector.inputs == []  # nothing reached the model


def test_float_and_uint8_tensors_give_the_uint8_pixels():
    image = _image_with_box()
    image[70:90, 120:180] = np.arange(60, dtype=np.uint8)[None, :, None] * 4  # every level 0..236 present
    expected, result = _seen(image)
    chw = torch.from_numpy(image).permute(2, 0, 1)
    for form in (chw.float() / 255, chw.half().float() / 255, chw.double() / 255, chw):
        seen, got = _seen(form)
        assert torch.equal(seen, expected)
        torch.testing.assert_close(got["boxes"], result["boxes"], rtol=0, atol=0)


def test_load_detector_of_a_torchvision_coco_detector(tmp_path):
    """A local file of torchvision's fcos_resnet50_fpn (random, seeded) loads as a predictor with COCO's names
    that predicts what torchvision's own model predicts on the same image (same scale: no resize)."""
    from torchvision.models import detection

    torch.manual_seed(0)
    theirs = detection.fcos_resnet50_fpn(weights=None, weights_backbone=None, min_size=256, max_size=256).eval()
    with torch.no_grad():  # some confident classes, so that there is something to compare
        theirs.head.classification_head.cls_logits.bias[[1, 17]] = 2.0
        theirs.head.regression_head.bbox_reg.bias.fill_(1.0)
    torch.save(theirs.state_dict(), tmp_path / "fcos.pth")
    predictor = load_detector(f"torchvision:fcos_resnet50_fpn:{tmp_path / 'fcos.pth'}")
    assert isinstance(predictor, Predictor) and len(predictor.class_names) == 91
    assert predictor.class_names[1] == "person" and predictor.input_size == 800
    predictor.input_size = 256  # a 256 x 256 image then goes in as it is
    image = (torch.rand(3, 256, 256) * 255).to(torch.uint8)
    [ours] = predictor.predict(image.permute(1, 2, 0).numpy())
    with torch.no_grad():
        [want] = theirs([image.float() / 255])
    assert len(ours["boxes"]) == len(want["boxes"]) > 0
    assert np.array_equal(ours["labels"], want["labels"].numpy())
    np.testing.assert_allclose(ours["scores"], want["scores"].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="unknown torchvision detector 'ssd300'"):
        load_detector("torchvision:ssd300:COCO_V1")
