SELECT least((SELECT min(run_at) FROM keel_jobs WHERE state = 'scheduled'),
             (SELECT min(lease_expires_at) FROM keel_jobs WHERE state = 'leased'))
