"""The DAG processor: packs the DAG folder into bundles, parses each bundle's files in an
isolated child (`parse_child`, the only module here that imports `authoring`), and records
the DAGs it found in the store. Bundles themselves (packing, the on-disk cache) are
`drayman.bundles`, which every layer below the components reads."""
