"""Integer codes of ticker columns: the index of each row's ticker in a list of names.

Ticker columns come plain (strings) or dictionary-encoded (the loader reads day files and
hands out its ticks with a dictionary over the requested tickers): a dictionary is looked
up once per value, not once per row, and not at all when it is ``names`` itself.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

__all__ = ["ticker_codes"]


def ticker_codes(symbols: pa.ChunkedArray | pa.Array, names: pa.Array) -> NDArray[np.int64]:
    """Index of each row's ticker in ``names`` (-1 if absent), for plain or
    dictionary-encoded ticker columns (looked up once per dictionary value)."""
    chunks = symbols.chunks if isinstance(symbols, pa.ChunkedArray) else [symbols]
    codes = []
    for chunk in chunks:
        if pa.types.is_dictionary(chunk.type) and not chunk.null_count:
            if chunk.dictionary.equals(names):  # the loader's ids: codes already
                codes.append(np.asarray(chunk.indices.to_numpy(), np.int64))
                continue
            found = pc.index_in(chunk.dictionary.cast(pa.string()), value_set=names)
            lookup = np.asarray(pc.fill_null(found, -1).to_numpy(), np.int64)
            code = np.full(len(chunk), -1, np.int64)
            if len(lookup):
                code = lookup[np.asarray(chunk.indices.to_numpy(), np.int64)]
        else:
            found = pc.index_in(chunk.cast(pa.string()), value_set=names)
            code = np.asarray(pc.fill_null(found, -1).to_numpy(), np.int64)
        codes.append(code)
    return np.concatenate(codes) if codes else np.zeros(0, np.int64)
