import json

import numpy as np
import pytest

from cbir.imageio import read_image, write_image


@pytest.fixture
def image_file(tmp_path, photo):
    path = tmp_path / "photo.png"
    write_image(path, photo)
    return path


def test_quantize_writes_posterized_image(cli, image_file, tmp_path):
    out = tmp_path / "out.png"
    code, stdout, stderr = cli("quantize", image_file, "-k", 4, "-o", out)
    assert code == 0, stderr
    result = read_image(out)
    assert result.shape == read_image(image_file).shape
    assert len(np.unique(result.reshape(-1, 3), axis=0)) <= 4


def test_sweep_writes_one_sheet_and_json_reports_each_k(cli, image_file, tmp_path):
    sheet = tmp_path / "sheet.png"
    swatch = tmp_path / "swatch.png"
    code, stdout, stderr = cli("quantize", image_file, "--sweep", "3,6", "-k", 2, "-o", sheet,
                               "--palette", swatch, "--json")
    assert code == 0, stderr
    document = json.loads(stdout)  # exactly one JSON document
    assert [r["k"] for r in document["results"]] == [2, 3, 6]
    for result in document["results"]:
        assert len(result["palette"]) == result["colors"] <= result["k"]
        assert abs(sum(p["share"] for p in result["palette"]) - 1) < 1e-4
        assert all(p["hex"].startswith("#") and len(p["hex"]) == 7 for p in result["palette"])
        assert result["rgb_mse"] >= 0 and result["mean_delta_e"] >= 0
    errors = [r["rgb_mse"] for r in document["results"]]
    assert errors == sorted(errors, reverse=True)
    assert read_image(sheet).shape[1] > read_image(image_file).shape[1]
    assert read_image(swatch).shape[0] == 3 * 48


def test_same_inputs_give_the_same_json(cli, image_file):
    first = json.loads(cli("quantize", image_file, "-k", 5, "--json")[1])
    second = json.loads(cli("quantize", image_file, "-k", 5, "--json")[1])
    for result in (first, second):
        for r in result["results"]:
            r.pop("seconds")
    assert first == second


@pytest.mark.parametrize("args", [["-k", "0"], ["-k", "-2"], ["-k", "many"], ["--sweep", "5,x"], ["--sweep", "0,3"],
                                  ["--space", "hsv"]])
def test_bad_k_is_a_usage_error(cli, image_file, tmp_path, args):
    out = tmp_path / "out.png"
    code, stdout, stderr = cli("quantize", image_file, *args, "-o", out)
    assert code == 2
    assert not out.exists()


def test_missing_and_corrupt_files_are_errors_and_write_nothing(cli, tmp_path):
    out = tmp_path / "out.png"
    code, stdout, stderr = cli("quantize", tmp_path / "missing.png", "-o", out)
    assert code == 1 and stdout == "" and stderr.startswith("Error: ") and "no such file" in stderr
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    code, stdout, stderr = cli("quantize", corrupt, "-o", out, "--palette", tmp_path / "p.png")
    assert code == 1 and stderr.startswith("Error: ") and len(stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.jpg"]


def test_unwritable_output_format_is_refused_before_work(cli, image_file, tmp_path):
    code, _, stderr = cli("quantize", image_file, "-o", tmp_path / "out.xyz")
    assert code == 1 and "cannot write" in stderr


def test_grayscale_16bit_and_alpha_files_quantize(cli, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "gray.png"), np.tile(np.arange(64, dtype=np.uint8) * 4, (16, 1)))
    cv2.imwrite(str(tmp_path / "deep.png"), np.tile(np.arange(64, dtype=np.uint16) * 1000, (16, 1)))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 1] = 200
    rgba[:8, :, 3] = 255
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    for name in ("gray.png", "deep.png", "alpha.png"):
        code, stdout, stderr = cli("quantize", tmp_path / name, "-k", 3, "--json")
        assert code == 0, stderr
        assert json.loads(stdout)["results"][0]["colors"] <= 3


def png_header(path):
    data = path.read_bytes()
    return data[24], data[25]  # bit depth, colour type


@pytest.mark.parametrize("k, depth", [(2, 1), (4, 2), (16, 4), (64, 8)])
def test_png_output_is_a_palette_image_at_the_smallest_depth(cli, image_file, tmp_path, k, depth):
    out = tmp_path / "out.png"
    code, stdout, stderr = cli("quantize", image_file, "-k", k, "-o", out, "--json")
    assert code == 0, stderr
    document = json.loads(stdout)
    assert png_header(out) == (depth, 3)
    colours = np.array([[int(p["hex"][i:i + 2], 16) for i in (1, 3, 5)] for p in document["results"][0]["palette"]])
    pixels = read_image(out).reshape(-1, 3)
    assert set(map(tuple, np.unique(pixels, axis=0))) <= set(map(tuple, colours))
    assert document["written"][0]["bytes"] == out.stat().st_size


def test_rgb_keeps_a_true_colour_copy(cli, image_file, tmp_path):
    palette_png, true_colour = tmp_path / "p.png", tmp_path / "t.png"
    assert cli("quantize", image_file, "-k", 8, "-o", palette_png)[0] == 0
    assert cli("quantize", image_file, "-k", 8, "-o", true_colour, "--rgb")[0] == 0
    assert png_header(palette_png)[1] == 3 and png_header(true_colour)[1] == 2
    np.testing.assert_array_equal(read_image(palette_png), read_image(true_colour))
    assert palette_png.stat().st_size < true_colour.stat().st_size


def test_gif_and_dither(cli, image_file, tmp_path):
    plain, dithered = tmp_path / "plain.gif", tmp_path / "dithered.gif"
    assert cli("quantize", image_file, "-k", 6, "-o", plain)[0] == 0
    code, stdout, stderr = cli("quantize", image_file, "-k", 6, "-o", dithered, "--dither", "floyd-steinberg")
    assert code == 0, stderr
    assert "palette" in stderr and "KiB" in stderr
    a, b = read_image(plain), read_image(dithered)
    assert len(np.unique(b.reshape(-1, 3), axis=0)) <= 6 and not np.array_equal(a, b)


def test_alpha_is_kept_in_a_palette_png(cli, tmp_path, photo):
    source = tmp_path / "alpha.png"
    alpha = np.zeros(photo.shape[:2] + (1,), np.uint8)
    alpha[:, photo.shape[1] // 2:] = 255
    write_image(source, np.concatenate([photo, alpha], axis=2))
    out = tmp_path / "out.png"
    code, stdout, stderr = cli("quantize", source, "-k", 8, "-o", out, "--json")
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["alpha"] is True and any(p["alpha"] == 0 for p in document["results"][0]["palette"])
    result = read_image(out, alpha=True)
    assert result.shape[2] == 4
    np.testing.assert_array_equal(result[..., 3], alpha[..., 0])


@pytest.mark.parametrize("args", [["-k", "300"], ["--rgb", "-k", "4", "--out-gif"], ["--dither", "ordered"]])
def test_palette_usage_errors(cli, image_file, tmp_path, args):
    out = tmp_path / ("out.gif" if "--out-gif" in args else "out.png")
    args = [a for a in args if a != "--out-gif"]
    code, stdout, stderr = cli("quantize", image_file, *args, "-o", out)
    assert code == 2, stderr
    assert not out.exists()
