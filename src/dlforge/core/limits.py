"""The largest single input dlforge accepts, shared by ingest and serving.

A dataset never holds an example that a served model would refuse: ingest
(:mod:`dlforge.data.types`) refuses the same sizes that ``conf/serve.yaml``'s
``max_input_chars`` and ``max_image_pixels`` refuse by default (a test keeps
the two equal).
"""

MAX_TEXT_CHARS = 10_000  # characters of one text input
MAX_IMAGE_PIXELS = 4096 * 4096  # width x height of one image (16.7 megapixels)
