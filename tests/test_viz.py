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


def test_draw_chains_shows_the_noised_image_at_each_node():
    from ddpm_lib.schedule import linear_schedule
    schedule = linear_schedule(100)
    x0 = np.linspace(-1, 1, 32 * 32, dtype=np.float32).reshape(32, 32, 1)
    ax = viz.draw_chains()
    assert not ax.images and len(ax.patches) == 4                 # x_T, x_t, x_{t-1}, x_0
    ax = viz.draw_chains(schedule, x0, t=40)
    shown = [im.get_array() for im in ax.images]
    expected = viz.noising_strip(schedule, x0, [99, 40, 39])
    assert len(shown) == 4
    for img, want in zip(shown[:3], expected):                    # the same eps at every node
        np.testing.assert_array_equal(img, viz.to_uint8(want[None])[0, ..., 0])
    np.testing.assert_array_equal(shown[3], viz.to_uint8(x0[None])[0, ..., 0])
    labels = [t.get_text() for t in ax.texts]
    assert "t = 41 (paper)" in labels and "T = 100 (paper)" in labels
    plt.close("all")
    with pytest.raises(ValueError, match=r"t must be a code time in \[1, 100\).*got 0"):
        viz.draw_chains(schedule, x0, t=0)
    with pytest.raises(ValueError, match="needs the schedule"):
        viz.draw_chains(None, x0)
