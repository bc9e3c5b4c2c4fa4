"""The data a run is made from: image sets (``images``: listing, selection, sharding), decoding
(``decode``: any Pillow format, a fast path for plain JPEGs), the Zarr shard stores (``store``)
and one layer's samples read back from them (``samples``).

Nothing is imported here, so importing one of these modules imports no other.
"""
