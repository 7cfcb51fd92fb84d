"""The experiment machinery: a curve's configuration and endpoints, the run cache, the results store,
the reference populations and the export of interpolated models."""
