"""Layers of a torch model: names and hooks (``layers``), output kinds (``kinds``), TensorFlow SAME
padding (``padding``) and the speed-ups that rewrite a model in place (``fastpaths``).

Nothing is imported here, so importing one of these modules imports no other.
"""
