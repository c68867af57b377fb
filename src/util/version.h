/*
 * version — chatd's one version string, for chatd, chat-client and
 * chat-bench alike.
 *
 * It comes from the VERSION file at the top of the tree, which the Makefile
 * passes to version.c as CHATD_VERSION (a build from a tarball without .git
 * has the same version as one from the repository). It is what --version
 * prints, /api/health's "version" and /metrics' chatd_build_info label, and
 * the package's version: letters, digits and . + ~ - only, so it needs no
 * escaping in JSON or a Prometheus label.
 */
#ifndef CHATD_VERSION_H
#define CHATD_VERSION_H

extern const char chatd_version[];

#endif
