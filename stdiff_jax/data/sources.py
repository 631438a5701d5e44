"""Where each real data set comes from, and how a fresh download is recognised.

Provenance is in ../shared/data/SOURCES.md. Files with a known sha256 are checked against it on
every load; for the others (energy, fMRI) no trusted checksum exists, so a fresh download is
checked by its shape and header instead and its sha256 is recorded beside the file.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Source:
    """One downloadable data file.

    Attributes:
        filename: name of the file in the data directory.
        url: canonical public location.
        sha256: expected hex digest, or None when none is known (the first download's is recorded).
        archive_member: when `url` is a .tar.gz, the base name of the one member to extract.
        shape: (rows, columns) of the parsed numeric table, checked on download.
        header: (first, last) numeric column names, checked on download when given.
    """

    filename: str
    url: str
    sha256: str | None = None
    archive_member: str | None = None
    shape: tuple[int, int] | None = None
    header: tuple[str, str] | None = None


SOURCES = {
    "stocks": Source(
        filename="stock_data.csv",
        url="https://raw.githubusercontent.com/jsyoon0823/TimeGAN/master/data/stock_data.csv",
        sha256="134b8a00eb4eefa3242dd7ae85144082da80dedf75a1a656d5d08f97cd95277a",
        shape=(3685, 6),
        header=("Open", "Volume"),
    ),
    "etth": Source(
        filename="ETTh1.csv",
        url="https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh1.csv",
        sha256="f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
        shape=(17420, 7),
        header=("HUFL", "OT"),
    ),
    "energy": Source(
        filename="energydata_complete.csv",
        url="https://archive.ics.uci.edu/ml/machine-learning-databases/00374/energydata_complete.csv",
        shape=(19735, 28),
        header=("Appliances", "rv2"),
    ),
    "fmri": Source(
        filename="sim4.mat",
        url="https://www.fmrib.ox.ac.uk/datasets/netsim/sims.tar.gz",
        archive_member="sim4.mat",
        shape=(10000, 50),
    ),
}
