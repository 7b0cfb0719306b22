"""Pulumi components and the pure logic behind them for ECR-to-ECR pull through cache."""
