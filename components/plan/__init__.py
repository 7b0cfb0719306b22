"""The plan: the whole stack as plain data (every resource, policy document and size, checked),
computed before anything is declared; no Pulumi, no AWS. The contract between the two stacks
lives here too."""
