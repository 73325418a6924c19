"""addressclip: image address localization (AddressCLIP, ECCV 2024) on the Hugging Face stack."""

from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")

setup(
    name="addressclip",
    version="0.1.0",
    description="AddressCLIP: image address localization with CLIP, Hugging Face native",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Three layers, imports pointing down only: addressclip_train -> dataset_scripts -> modeling_addressclip.
    packages=find_packages(
        include=[
            "modeling_addressclip",
            "modeling_addressclip.*",
            "dataset_scripts",
            "dataset_scripts.*",
            "addressclip_train",
            "addressclip_train.*",
        ]
    ),
    package_data={
        "modeling_addressclip": ["metrics/*/*.py", "metrics/*/*.md"],
        "dataset_scripts": ["data/*"],
        "addressclip_train": ["configs/*.json"],
    },
    include_package_data=True,
    entry_points={"console_scripts": ["addressclip=addressclip_train.cli:main"]},
    install_requires=[
        "torch>=2.4,<3",
        "transformers>=5.0,<6",
        "tokenizers>=0.21",
        "datasets>=3.0",
        "accelerate>=1.0",
        "huggingface_hub>=1.0",
        "pyproj>=3.6",
        "evaluate>=0.4.3",
        "safetensors>=0.4",
        "pillow>=10.0",
        "numpy>=1.26",
        "tqdm>=4.66",
        # The demo (the main job: build a city from OpenStreetMap, train, plot) needs these three small wheels.
        "osmium>=4.0",
        "shapely>=2.0",
        "matplotlib>=3.8",
    ],
    extras_require={
        "pitts": ["scipy>=1.11"],  # Pitts250k's .mat coordinate files
        "heic": ["pillow-heif>=0.16"],  # iPhone photos (HEIC/HEIF)
        "app": ["gradio>=6.0,<7"],  # the web demo (addressclip demo, app.py)
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "scipy>=1.11",
            "ruff>=0.6",
            "parameterized>=0.9",  # transformers' ModelTesterMixin (tests/test_clip_conformance.py)
            "pillow-heif>=0.16",
            "gradio>=6.0,<7",
            "selenium>=4.11",  # drives the system chromium (.ci/browser-deps.sh) in tests/test_web_demo.py
        ],
    },
)
