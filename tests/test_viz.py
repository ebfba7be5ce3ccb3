"""ddpm_lib.viz: grids, and the network diagrams read from the models' own blocks."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ddpm_lib import HoUNet, viz  # noqa: E402


def test_image_grid_tiles_and_scales():
    x = np.stack([np.full((4, 4, 1), v, np.float32) for v in (-1.0, 1.0, 0.0)])
    grid = viz.image_grid(x, ncols=2, pad=1)
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 1) and grid.dtype == np.uint8
    assert grid[1, 1, 0] == 0 and grid[1, 6, 0] == 255 and grid[6, 1, 0] in (127, 128)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\) or \(N, H, W\)"):
        viz.image_grid(np.zeros(5))


def test_ho_unet_blocks_follow_the_model():
    model = HoUNet(base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                   dropout=0.0, groups=4)
    blocks = viz.unet_blocks(model)
    res = [b for b in blocks if b["kind"].startswith("ResBlock")]
    assert len(res) == 3 * 2 + 3 * 3                   # 2 down and 3 up per level
    assert [b["part"] for b in blocks][0] == "in" and blocks[-1]["part"] == "out"
    attn = {b["name"] for b in blocks if "Attn" in b["kind"] and b["part"] != "mid"}
    assert attn == {"down1_res0", "down1_res1", "up1_res0", "up1_res1", "up1_res2"}   # 16x16 only
    assert {b["size"] for b in res} == {32, 16, 8} and blocks[-1]["channels"] == 1
    assert max(b["channels"] for b in blocks) == 16


def test_draw_unet_draws_one_box_per_block(tiny_unet):
    for model in (tiny_unet, HoUNet(base_channels=8, channel_mult=(1, 2), groups=4).build_for()):
        ax = viz.draw_unet(model)
        assert len(ax.patches) == len(viz.unet_blocks(model))
        assert f"{model.count_params():,} parameters" in ax.get_title()
        plt.close("all")
    with pytest.raises(ValueError, match="draw a UNet or a HoUNet; got str"):
        viz.unet_blocks("not a model")
