"""The example DAGs `drayman standalone` runs when there is no DAG folder of your own."""
