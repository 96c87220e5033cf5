"""Read-only views of the stored records: SQL aggregates turned into figures for tables and documents."""
