# make deb / make rpm: installable packages in dist/ (SPEC §9, issue 7).
# Included from the top-level Makefile; the work is in packaging/build-package.sh.
.PHONY: deb rpm

deb:
	@packaging/build-package.sh deb

rpm:
	@packaging/build-package.sh rpm
