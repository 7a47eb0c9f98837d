SELECT namespace, name FROM keel_monitors WHERE token = $1
