/**
 * The kernel families, one file each: modules (kernel-modules.ts), sysctl (sysctl.ts), the Pi's
 * kernel command line and memory cgroup (boot-cmdline.ts), reboot (reboot.ts), and what they share
 * (kernel-files.ts). This module gathers them for the task index and existing imports.
 */
export * from './kernel-files.js';
export * from './kernel-modules.js';
export * from './sysctl.js';
export * from './boot-cmdline.js';
export * from './reboot.js';
