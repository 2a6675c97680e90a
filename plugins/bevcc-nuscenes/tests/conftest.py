"""The tiny dataroot, written once per session into a temporary folder."""

import pytest
from bevcc_nuscenes.tiny_dataroot import write_tiny_dataroot


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return write_tiny_dataroot(tmp_path_factory.mktemp("nuscenes") / "dataroot")
