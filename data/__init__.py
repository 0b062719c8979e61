"""netralitas: data package."""
