"""Inference backends behind one :class:`~aeb_app.inference.base.Detector` interface."""
