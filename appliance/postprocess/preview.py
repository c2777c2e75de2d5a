"""``preview``: PNG previews of the mosaics, and a three-colour composite of three filters.

A look at the products without a FITS viewer: astropy.visualization's asinh
(or log, sqrt, linear) stretch over a percentile interval, sky-coordinate axes
from the image's WCS and a colour bar in the image's unit.  The composite maps
the shortest wavelength to blue and the longest to red, as in the reference
workflow's F770W/F1000W/F1500W picture, on the shortest wavelength's grid.
Figures are made with matplotlib's object API and the Agg canvas (no pyplot,
no display), at a fixed size, so the same data give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.files import writing
from appliance.postprocess.common import Image, log, read_image

SIZE_INCHES = 8.0
DPI = 100  # so a preview is 800 x 800 pixels
LOWER_PERCENTILE, UPPER_PERCENTILE = 1.0, 99.8


def stretch_for(name: str):
    from astropy.visualization import AsinhStretch, LinearStretch, LogStretch, SqrtStretch

    return {"asinh": lambda: AsinhStretch(0.1), "log": lambda: LogStretch(1000),
            "sqrt": SqrtStretch, "linear": LinearStretch}[name]()


def normalise(data: np.ndarray, stretch: str):
    """An ImageNormalize over the finite pixels' percentile interval."""
    from astropy.visualization import AsymmetricPercentileInterval, ImageNormalize

    finite = data[np.isfinite(data)]
    if finite.size == 0:
        finite = np.zeros(1)
    vmin, vmax = AsymmetricPercentileInterval(LOWER_PERCENTILE, UPPER_PERCENTILE).get_limits(finite)
    if not vmax > vmin:
        vmax = vmin + 1.0
    return ImageNormalize(vmin=vmin, vmax=vmax, stretch=stretch_for(stretch), clip=False)


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(SIZE_INCHES, SIZE_INCHES), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _axes(fig, image: Image, rect=(0.14, 0.1, 0.68, 0.8)):
    if image.wcs is None:
        ax = fig.add_axes(rect)
        ax.set_xlabel("x (pixel)")
        ax.set_ylabel("y (pixel)")
        return ax
    ax = fig.add_axes(rect, projection=image.wcs)
    ax.coords[0].set_axislabel("Right Ascension (ICRS)")
    ax.coords[1].set_axislabel("Declination (ICRS)")
    ax.coords.grid(color="white", alpha=0.25, linestyle="solid")
    return ax


def render_single(image: Image, target: Path, stretch: str, title: str) -> None:
    fig = _figure()
    ax = _axes(fig, image)
    norm = normalise(image.data, stretch)
    import matplotlib

    cmap = matplotlib.colormaps["inferno"].with_extremes(bad="#808080")  # no data: grey
    shown = ax.imshow(image.data, origin="lower", cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    cax = fig.add_axes((0.85, 0.1, 0.03, 0.8))
    bar = fig.colorbar(shown, cax=cax)
    bar.set_label(image.bunit or "value")
    _save(fig, target)


def reproject_to(image: Image, onto: Image) -> np.ndarray:
    """``image`` sampled on ``onto``'s pixel grid through the two WCSs (bilinear; NaN outside)."""
    from scipy.ndimage import map_coordinates

    ny, nx = onto.data.shape
    if image.wcs is None or onto.wcs is None:
        raise ValueError("the composite needs a WCS on every mosaic")
    yy, xx = np.mgrid[0:ny, 0:nx]
    sky = onto.wcs.pixel_to_world(xx.ravel(), yy.ravel())
    x, y = image.wcs.world_to_pixel(sky)
    filled = np.nan_to_num(image.data, nan=0.0)
    valid = map_coordinates((~image.coverage).astype(float), [y, x], order=1, cval=0.0) > 0.999
    values = map_coordinates(filled, [y, x], order=1, cval=0.0)
    return np.where(valid, values, np.nan).reshape(ny, nx)


def render_composite(images: list[Image], target: Path, stretch: str, title: str) -> None:
    """Blue, green, red = ``images`` in order; each channel stretched on its own interval."""
    base = images[0]
    channels = [base.data] + [reproject_to(im, base) for im in images[1:]]
    planes = []
    for data in channels:
        norm = normalise(data, stretch)
        scaled = np.ma.filled(norm(np.where(np.isfinite(data), data, norm.vmin)), 0.0)
        planes.append(np.clip(np.nan_to_num(scaled), 0.0, 1.0))
    rgb = np.dstack(planes[::-1])  # red, green, blue
    fig = _figure()
    ax = _axes(fig, base, rect=(0.14, 0.1, 0.8, 0.8))
    ax.imshow(rgb, origin="lower", interpolation="nearest")
    ax.set_title(title, fontsize=10)
    _save(fig, target)


def _save(fig, target: Path) -> None:
    with writing(target) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def run(task, workdir: Path) -> None:
    p = task.params
    target = workdir / task.outputs[0]
    if p["filter"] == "rgb":
        images = [read_image(workdir / path) for path in task.inputs]
        filters = p["filters"]
        title = f"R {filters[2]}   G {filters[1]}   B {filters[0]}   ({p['stretch']} stretch)"
        render_composite(images, target, p["stretch"], title)
    else:
        image = read_image(workdir / task.inputs[0])
        kind = "background-subtracted" if p["input"] == "background" else "stage-3 mosaic"
        render_single(image, target, p["stretch"], f"{Path(task.inputs[0]).name}\n{p['filter']}, {kind}, {p['stretch']} stretch")
    log.info("wrote %s", task.outputs[0])
