"""What the run reports: the MEMRAY REPORT, the JSON document, flame graphs."""
