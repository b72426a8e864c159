"""Packaging for chronopipe: the package lives in src/, pinned deps in requirements.txt."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="chronopipe",
    version="0.1.0",
    description=(
        "Actor-based multiprocessing pipelines: read many timestamped streams, "
        "merge them in order, dispatch records to checks."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    package_dir={"": "src"},
    packages=find_packages("src"),
    install_requires=[
        "pathos>=0.3.2",
        "dill>=0.3.8",
        "multiprocess>=0.70.16",
        "psutil>=5.9",
        "ply==3.11",
        "sortedcontainers>=2.4",
        "tqdm>=4.66",
    ],
    extras_require={
        # Optional features, imported lazily by the modules that use them. An extra is declared
        # with the code that imports it, not before.
        "yaml": ["pyyaml>=6"],  # chronopipe validate --rules rules.yml
        "plot": ["graphviz>=0.20"],  # Pipeline.plot()
        "websocket": ["websockets>=13"],  # chronopipe.sources.WebSocketSource
        "cron": ["croniter>=2"],  # chronopipe.sources.CronSource
        "runs": ["pyyaml>=6", "pydantic>=2.7"],  # chronopipe run / lint pipeline.yml
        "parquet": ["pyarrow>=15"],  # CSV consumers, Parquet stages and sinks
        "postgres": ["psycopg[binary]>=3.2", "pyarrow>=15"],  # the PostgreSQL sink (COPY)
        "control": ["aiohttp>=3.9"],  # the HTTP control plane (chronopipe.control)
        "ray": ["ray>=2.40"],  # mode="ray": actors, pipelines and chronopipe.distribute on Ray
    },
    entry_points={"console_scripts": ["chronopipe=chronopipe.__main__:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Operating System :: POSIX :: Linux",
    ],
)
