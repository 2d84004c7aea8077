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
