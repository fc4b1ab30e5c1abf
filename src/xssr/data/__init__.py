"""Reading, listing, checking and preparing images and masks.

Typical use::

    records = load_records("@cxr_lung_qu#site=covidqu_covid19&split=train")
    check_inputs({"pool": records})            # raises InputError listing every problem
    images, _ = load_arrays(records, size=256, channels=1, normalize="minmax")
"""

from .embeddings import read_embeddings
from .preprocess import (
    NORMALIZATIONS,
    iter_arrays,
    load_arrays,
    normalize_image,
    prepare_image,
    prepare_mask,
)
from .readers import (
    SUPPORTED_SUFFIXES,
    ImageReadError,
    SliceReader,
    count_slices,
    read_image,
    read_mask,
    read_volume,
)
from .records import ImageRecord, record_order
from .sources import DataSpec, annotated_records, default_data_root, load_records, parse_spec, resolve_path
from .synthetic import make_synthetic_dataset
from .validate import InputError, InputSummary, check_inputs, file_sha1

__all__ = [
    "NORMALIZATIONS",
    "SUPPORTED_SUFFIXES",
    "DataSpec",
    "ImageReadError",
    "ImageRecord",
    "InputError",
    "InputSummary",
    "SliceReader",
    "check_inputs",
    "count_slices",
    "default_data_root",
    "file_sha1",
    "iter_arrays",
    "load_arrays",
    "load_records",
    "make_synthetic_dataset",
    "normalize_image",
    "parse_spec",
    "prepare_image",
    "prepare_mask",
    "read_embeddings",
    "read_image",
    "read_mask",
    "read_volume",
    "record_order",
    "resolve_path",
]
