"""Reads the PNG plots that keras_rir writes, to test what they show rather than their header."""

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path):
    """The RGB pixels of a PNG file, floats in [0, 1], after checking the signature."""
    with open(path, "rb") as file:
        assert file.read(8) == PNG_SIGNATURE, path
    from matplotlib import image

    return image.imread(path)[..., :3]


def colour_pixels(pixels, colour):
    """How many pixels have (within anti-aliasing) matplotlib colour `colour`, e.g. "C1"."""
    from matplotlib import colors

    rgb = np.array(colors.to_rgb(colour))
    return int(np.sum(np.all(np.abs(pixels - rgb) < 0.02, axis=-1)))


def assert_depends_on_data(first, second):
    """Two plots of different data: both drawn (not one flat colour) and not the same image."""
    for pixels in (first, second):
        assert pixels.std() > 0
    assert first.shape != second.shape or not np.array_equal(first, second)
