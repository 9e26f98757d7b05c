"""Accuracy (COCO mAP) and speed measurement, the precision x batch sweep, and its reports."""
