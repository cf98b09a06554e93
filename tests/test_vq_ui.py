"""The explorer's VQ tab: the region to keep (halves, box, painted strokes -> code cells), the code map, and the
/vq_resample endpoint end to end on a tiny model (reconstruction first, then re-samples that keep the region)."""

from __future__ import annotations

import numpy as np
import pytest

from ganserve.ui.backend import BackendError
from ganserve.ui.vq import cells_touched, code_map, keep_field
from tests.vq_fixtures import save_tiny


def test_regions_become_keep_fields():
    assert keep_field("top half", None, None, (4, 4)) == {"half": "top"}
    assert keep_field("box", "0, 1, 2, 3", None, (4, 4)) == {"box": [0, 1, 2, 3]}
    painted = np.zeros((32, 32), bool)
    painted[0:3, 30:32] = True  # the top-right corner
    painted[20, 5] = True
    mask = keep_field("painted", None, painted, (4, 4))["mask"]
    assert np.array_equal(np.nonzero(mask), ([0, 2], [3, 0]))
    with pytest.raises(BackendError) as e:
        keep_field("box", "1,2", None, (4, 4))
    assert e.value.field == "keep.box"
    with pytest.raises(BackendError) as e:
        keep_field("painted", None, np.zeros((8, 8), bool), (4, 4))
    assert e.value.field == "keep.mask"


def test_cells_touched_scales_any_canvas_to_the_grid():
    painted = np.zeros((100, 60), bool)
    painted[99, 59] = True
    assert cells_touched(painted, (8, 8))[7, 7] and cells_touched(painted, (8, 8)).sum() == 1


def test_code_map_colours_codes_and_frames_kept_cells():
    img = code_map([[0, 1], [1, 0]], 2, keep=[[True, False], [False, False]], cell=10)
    assert img.shape == (20, 20, 3) and img.dtype == np.uint8
    assert (img[5, 15] == img[15, 5]).all() and not (img[5, 15] == img[15, 15]).all()  # same code, same colour
    assert (img[1, 5] == 255).all() and not (img[11, 15] == 255).all()  # the kept cell is framed


def test_vq_resample_endpoint(tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    from PIL import Image

    from ganserve.ui.app import build_app, launch
    from ganserve.ui.backend import LocalBackend
    from tests.test_ui_app import free_port

    path = save_tiny(tmp_path, "vqgan")
    app = build_app(LocalBackend({"tiny-vq": path}))
    _, url, _ = launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(url, verbose=False)
        src = tmp_path / "src.png"
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(src)
        f = gradio_client.handle_file(str(src))
        gallery, codes_png, params, status = client.predict(
            "tiny-vq", {"background": f, "layers": [], "composite": f}, "bottom half", "", "0-2",
            1.0, 1, "const", 2, 1.0, 0, 1.0, api_name="/vq_resample",
        )  # fmt: skip
        assert len(gallery) == 4 and params[0]["reconstruction"] and "re-samples" in status
        codes = params[0]["codes"]
        assert all(p["source_codes"] == codes and p["keep"] == {"half": "bottom"} for p in params[1:])
        assert np.asarray(Image.open(codes_png)).shape[:2] == (4 * 24, 4 * 24)
    finally:
        app.close()
