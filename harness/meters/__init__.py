"""Metering: power sources behind one seam, a background sampler, and counter interpolation."""
