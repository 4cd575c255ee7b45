/* version.h - Simpleton's version string. */
#ifndef SMP_VERSION_H
#define SMP_VERSION_H
#define SIMPLETON_VERSION "0.1.0"
#endif
