from PIL import Image
from PIL.PngImagePlugin import PngInfo

from dbooth.util.pngmeta import META_KEY, a1111_parameters, read_record, write_png


def test_record_round_trips_and_a1111_viewers_see_the_prompt(tmp_path):
    record = {"prompt": "a photo of sks dog", "seed": 7, "steps": 20, "guidance_scale": 5.0, "scheduler": "dpm++"}
    path = write_png(tmp_path / "x.png", Image.new("RGB", (8, 8), "red"), record)
    assert read_record(path) == record
    with Image.open(path) as im:
        assert im.text["parameters"].splitlines() == ["a photo of sks dog", "Steps: 20, Sampler: dpm++, CFG scale: 5.0, Seed: 7"]
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_negative_prompt_goes_on_its_own_line():
    text = a1111_parameters({"prompt": "a dog", "negative_prompt": "blurry", "seed": 1})
    assert text == "a dog\nNegative prompt: blurry\nSeed: 1"


def test_images_without_a_record_or_with_a_broken_one_read_as_none(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    info = PngInfo()
    info.add_text(META_KEY, "{not json")
    Image.new("RGB", (4, 4)).save(tmp_path / "broken.png", pnginfo=info)
    (tmp_path / "not-an-image.png").write_bytes(b"hello")
    assert [read_record(tmp_path / n) for n in ("plain.png", "broken.png", "not-an-image.png")] == [None] * 3
