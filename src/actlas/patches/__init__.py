"""Patch experiments: paste a patch into photos and measure flips to a target class, against controls.

``spec`` parses patch specifications (also used by the workflow's rules), ``photos`` chooses and
decodes the photos, ``experiment`` runs the trials and discovery (pure), ``stats`` holds the rates
and Wilson intervals, ``report`` writes report.md and the figures. The stage is ``actlas.stages.patch``.

Nothing is imported here, so importing one of these modules imports no other.
"""
