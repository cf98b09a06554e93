"""Measured quality: Inception features (features.py), FID / KID / precision-recall-density-coverage (metrics.py), a
classifier trained here for class-conditional models (classifier.py), the real reference images (real_data.py), and
the run that ties them to a model (evaluate.py, behind ``ganserve eval``). Needs the ``eval`` extra for the features."""
