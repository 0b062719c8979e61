"""netralitas: eval package."""
