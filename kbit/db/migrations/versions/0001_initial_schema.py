"""Initial schema: teams, sweeps, runs (the queue), results, bit reports, samples.

Revision ID: 0001
Revises:
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('teams',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teams')),
    sa.UniqueConstraint('name', name=op.f('uq_teams_name'))
    )
    op.create_table('sweeps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('spec_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('submitter', sa.String(length=200), nullable=True),
    sa.Column('code_version', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('active', 'cancelled')", name=op.f('ck_sweeps_status')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_sweeps_team_id_teams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sweeps')),
    )
    op.create_index('uq_sweeps_active_spec', 'sweeps', ['team_id', 'name', 'spec_hash'], unique=True, sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
    op.create_index(op.f('ix_sweeps_team_id'), 'sweeps', ['team_id'], unique=False)


    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=300), nullable=False),
    sa.Column('revision', sa.String(length=100), nullable=False),
    sa.Column('family', sa.String(length=100), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('bits', sa.Integer(), nullable=False),
    sa.Column('dtype', sa.String(length=16), nullable=False),
    sa.Column('blocksize', sa.Integer(), nullable=True),
    sa.Column('exponent_bits', sa.Integer(), nullable=True),
    sa.Column('outlier_fraction', sa.Float(), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('eval', sa.JSON(), nullable=False),
    sa.Column('eval_hash', sa.String(length=64), nullable=False),
    sa.Column('cache_key', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('device', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('wall_time_s', sa.Double(), nullable=True),
    sa.Column('peak_memory_bytes', sa.BigInteger(), nullable=True),
    sa.Column('error_type', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('provenance', sa.JSON(), nullable=True),
    sa.Column('cached_from_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'cached')", name=op.f('ck_runs_status')),
    sa.ForeignKeyConstraint(['cached_from_id'], ['runs.id'], name=op.f('fk_runs_cached_from_id_runs')),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], name=op.f('fk_runs_sweep_id_sweeps')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    op.create_index('ix_runs_cache_key', 'runs', ['cache_key'], unique=False)
    op.create_index('ix_runs_claim', 'runs', ['status', 'priority', 'id'], unique=False)
    op.create_index('ix_runs_frontier', 'runs', ['status', 'family', 'dtype', 'bits', 'blocksize'], unique=False)
    op.create_index('ix_runs_group', 'runs', ['status', 'model', 'revision', 'eval_hash', 'priority', 'id'], unique=False)
    op.create_index('ix_runs_lease', 'runs', ['status', 'lease_expires_at'], unique=False)
    op.create_index('ix_runs_sweep_status', 'runs', ['sweep_id', 'status'], unique=False)
    op.create_index('uq_runs_cache_key_done', 'runs', ['cache_key'], unique=True, sqlite_where=sa.text("status = 'done'"), postgresql_where=sa.text("status = 'done'"))


    op.create_table('bit_reports',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('n_params', sa.BigInteger(), nullable=False),
    sa.Column('n_quantized', sa.BigInteger(), nullable=False),
    sa.Column('bits_per_param', sa.Double(), nullable=False),
    sa.Column('total_bits', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_bit_reports_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_bit_reports'))
    )
    op.create_table('results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('task', sa.String(length=200), nullable=False),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.Column('stderr', sa.Double(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_results_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_results')),
    sa.UniqueConstraint('run_id', 'task', 'metric', name='uq_results_run_task_metric')
    )
    op.create_index('ix_results_task_metric', 'results', ['task', 'metric', 'run_id'], unique=False)


    op.create_table('samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('task', sa.String(length=200), nullable=False),
    sa.Column('doc_id', sa.Integer(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_samples_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_samples'))
    )
    op.create_index('ix_samples_run_task', 'samples', ['run_id', 'task'], unique=False)




def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_samples_run_task', table_name='samples')


    op.drop_table('samples')
    op.drop_index('ix_results_task_metric', table_name='results')


    op.drop_table('results')
    op.drop_table('bit_reports')
    op.drop_index('uq_runs_cache_key_done', table_name='runs', sqlite_where=sa.text("status = 'done'"), postgresql_where=sa.text("status = 'done'"))
    op.drop_index('ix_runs_sweep_status', table_name='runs')
    op.drop_index('ix_runs_lease', table_name='runs')
    op.drop_index('ix_runs_group', table_name='runs')
    op.drop_index('ix_runs_frontier', table_name='runs')
    op.drop_index('ix_runs_claim', table_name='runs')
    op.drop_index('ix_runs_cache_key', table_name='runs')


    op.drop_table('runs')
    op.drop_index('uq_sweeps_active_spec', table_name='sweeps')
    op.drop_index(op.f('ix_sweeps_team_id'), table_name='sweeps')


    op.drop_table('sweeps')
    op.drop_table('teams')
