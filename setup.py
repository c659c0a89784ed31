"""Package layout that pyproject.toml cannot express: the committed data (``data/``: the tiny tier,
the own-data sample, their provenance) ships inside the wheel as ``course_lib/_data``, so a plain
``pip install`` of the repository (Colab, Kaggle) runs every notebook on the tiny tier without a
checkout. Everything else is in pyproject.toml."""
from pathlib import Path

from setuptools import find_packages, setup

DATA = Path(__file__).resolve().parent / "data"
# every folder of data/ is declared, so setuptools copies its files and does not warn about them
data_packages = ["course_lib._data"] + [
    "course_lib._data." + ".".join(d.relative_to(DATA).parts) for d in sorted(DATA.rglob("*")) if d.is_dir()
]

setup(
    packages=find_packages(include=["course_lib", "course_lib.*"]) + data_packages,
    package_dir={"course_lib._data": "data"},
    package_data={name: ["*"] for name in data_packages},
)
