/** One lab host to create: its inventory name (also its hostname), groups and host vars. */
export interface LabHostSpec {
  name: string;
  groups?: string[];
  vars?: Record<string, unknown>;
}

/** A lab host as created: `pid` is its systemd-nspawn process (0 while powered off by `stopHost`). */
export interface LabHost {
  name: string;
  address: string;
  pid: number;
  groups: string[];
  /** The host vars it was created with (written to the inventory). */
  vars: Record<string, unknown>;
}

/** A lab that is up: where its files are and its hosts. */
export interface LabState {
  /** The lab directory (`CAPSTAN_LAB_DIR`, else /var/tmp/capstan-lab). */
  dir: string;
  bridge: string;
  hosts: LabHost[];
  /** The Ansible-format YAML inventory written for this lab. */
  inventoryPath: string;
  /** OpenSSH known_hosts with every host's freshly generated host keys. */
  knownHostsPath: string;
  /** The private key that root and the `capstan` user accept. */
  keyPath: string;
}

/** A lab host with whether its sshd answers right now. */
export interface LabHostStatus extends LabHost {
  up: boolean;
}

/** `labStatus`'s answer: the lab with each host up or down. */
export interface LabStatus extends LabState {
  hosts: LabHostStatus[];
}
