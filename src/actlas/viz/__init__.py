"""Feature visualisation: the icons of an atlas, in Lucent's four parts.

``param`` makes the image (tensors to optimise, a function that returns RGB images), ``transforms``
perturbs it (transformation robustness), ``objectives`` scores it, and ``render`` runs the loop.

Nothing is imported here, so importing one of these modules imports no other.
"""
