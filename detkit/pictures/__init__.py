"""Pictures: training curves, drawn detections, feature maps and localization maps."""
