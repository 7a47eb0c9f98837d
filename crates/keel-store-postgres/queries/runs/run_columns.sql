seq, id, namespace, workflow, version, input, state, created_at, updated_at, rev
