"""Tests for detkit.ops.nms: per-image NMS with a cap on survivors, in PyTorch and as exported to ONNX."""

import pytest
import torch
from torchvision.ops import nms

from detkit.ops.nms import nms_per_image


def _candidates(batch: int = 3, num: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clustered random boxes (plenty of overlaps) with some candidates masked out (score -1)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, num, 2, generator=g) * 40
    sizes = 5 + torch.rand(batch, num, 2, generator=g) * 20
    boxes = torch.cat((centres - sizes / 2, centres + sizes / 2), dim=-1)
    scores = torch.rand(batch, num, generator=g)
    scores[:, ::7] = -1.0
    return boxes, scores


def _expected(boxes: torch.Tensor, scores: torch.Tensor, iou: float, max_kept: int) -> torch.Tensor:
    kept = torch.zeros(scores.shape, dtype=torch.bool)
    for b in range(scores.shape[0]):
        valid = (scores[b] >= 0).nonzero().squeeze(1)
        kept[b, valid[nms(boxes[b, valid], scores[b, valid], iou)[:max_kept]]] = True
    return kept


@pytest.mark.parametrize("max_kept", [1, 5, 1000])
def test_nms_per_image_keeps_the_top_survivors_of_each_image(max_kept):
    boxes, scores = _candidates()
    kept = nms_per_image(boxes, scores, 0.5, max_kept)
    assert torch.equal(kept, _expected(boxes, scores, 0.5, max_kept))
    assert kept.sum(1).max() <= max_kept and not kept[scores < 0].any()
    if max_kept == 5:  # the cap bites: a full NMS keeps more, and the kept ones are its best
        full = nms_per_image(boxes, scores, 0.5)  # no cap (TorchScript exported before the cap existed calls this)
        assert torch.equal(full, _expected(boxes, scores, 0.5, None))
        fifth_best = torch.where(full, scores, -2.0).topk(5, dim=1).values[:, -1:]  # (B, 1)
        assert (full.sum(1) > 5).all() and torch.equal(kept, full & (scores >= fifth_best))


@pytest.mark.parametrize("max_kept", [5, None])
def test_nms_per_image_in_onnx_equals_pytorch(tmp_path, max_kept):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from detkit.deploy.export import _nms_per_image_onnx

    class Wrapper(torch.nn.Module):
        def forward(self, boxes, scores):
            return nms_per_image(boxes, scores, 0.5, max_kept)

    boxes, scores = _candidates()
    path = tmp_path / "nms.onnx"
    torch.onnx.export(Wrapper(), (boxes, scores), str(path), dynamo=True, external_data=False,
                      custom_translation_table={torch.ops.detkit.nms_per_image.default: _nms_per_image_onnx})  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    (kept,) = session.run(None, dict(zip(names, (boxes.numpy(), scores.numpy()))))
    assert torch.equal(torch.from_numpy(kept), _expected(boxes, scores, 0.5, max_kept))
