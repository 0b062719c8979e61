"""netralitas: training package."""
