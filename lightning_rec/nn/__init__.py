"""Reusable ``nn.Module`` blocks and losses shared by the recommenders."""
